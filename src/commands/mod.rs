//! CLI commands that are not "run a script": each in a file of its own.

pub mod doctor;
pub mod history;
pub mod lab;
pub mod lab_controller;
pub mod state;
