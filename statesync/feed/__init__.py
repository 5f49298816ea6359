"""The change feed: sequencing committed changes, publishing them, fanning them out."""
