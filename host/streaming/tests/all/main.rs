//! Integration tests of fungi-streaming: window semantics on hand-computed cases.

mod windows;
