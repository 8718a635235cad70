"""The toolbox knowledge base: pages, vocabulary, retrieval."""
