//! The SPIR-V of every shader variant, compiled from `shaders/` by build.rs and embedded here.

#![allow(dead_code)]

include!(concat!(env!("OUT_DIR"), "/shaders.rs"));
