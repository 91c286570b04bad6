//! Compiles and runs the README's Rust example as a doctest.
#![doc = include_str!("../../../README.md")]
