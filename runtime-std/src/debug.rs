//! `lafs debug`: inspect caps and derivations without a grid.

pub fn main_placeholder() -> i32 {
    0
}
