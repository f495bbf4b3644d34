"""The contract: plain data that every stage reads (results, plans, targets); no torch."""
