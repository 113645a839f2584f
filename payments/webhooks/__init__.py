"""Provider webhooks: stored raw first, verified, deduplicated, mapped by a versioned mapper to a
normalized event, applied through the same services as every other path; failures quarantined."""
