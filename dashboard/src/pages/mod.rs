//! The dashboard's pages.

pub mod admin;
pub mod job;
pub mod jobs;
pub mod plugins;
pub mod signin;
