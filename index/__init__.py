"""Documents -> chunks -> embeddings -> FAISS + BM25 -> hybrid search. Never imports discord."""
