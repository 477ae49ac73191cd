"""A link as a document: safe fetching (fetch), extraction and storage of pages (pages), the
shared corpus's sources and re-fetching (sources), and links that open on a quote (fragments)."""
