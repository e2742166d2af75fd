"""Client dialects: one package per client API, each a pair of pure codecs around the canonical form."""
