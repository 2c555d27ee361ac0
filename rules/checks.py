"""Named checks for what the condition language cannot say; rules cite them by name."""
