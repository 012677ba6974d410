//! Protocol handlers, one file per protocol family, each an `impl XHandler for WayRay` and its
//! `delegate_*!` line.

mod compositor;
mod cursor_shape;
mod decoration;
mod layer_shell;
mod output;
mod seat;
mod xdg_shell;
mod xwayland;

pub use xdg_shell::handle_commit as xdg_handle_commit;
pub use xwayland::x11_wants_title_bar;
