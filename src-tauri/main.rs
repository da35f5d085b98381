//! The desktop entry point: everything is in the library, which mobile builds load directly.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    hubbub_app::run();
}
