//go:build tools

package tools

import _ "github.com/dexidp/dex/cmd/dex"
