//! Unit tests for the tokenizer on small vocabularies built in memory.
