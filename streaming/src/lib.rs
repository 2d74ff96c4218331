//! Streaming execution plans (windows arrive with the next issue).
