"""The payment domain's commands: the only writers of payment rows."""
