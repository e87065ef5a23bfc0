//! Integration tests of fungi-streaming: window semantics on hand-computed cases.

mod partial_windows;
mod windows;
