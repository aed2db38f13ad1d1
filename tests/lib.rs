//! Integration tests for Myelin live in `tests/`: they start real servers on 127.0.0.1 and talk
//! HTTP to them. This library target is intentionally empty.
