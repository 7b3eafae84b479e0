"""Identity and access: who the caller is and what they may do."""
