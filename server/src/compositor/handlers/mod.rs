//! Protocol handlers, one file per protocol family, each an `impl XHandler for WayRay` and its
//! `delegate_*!` line.

mod compositor;
mod cursor_shape;
mod decoration;
mod ext_data_control;
mod foreign_toplevel_list;
mod idle_inhibit;
mod idle_notify;
mod input_method;
mod keyboard_shortcuts_inhibit;
mod layer_shell;
mod output;
mod pointer_constraints;
mod presentation;
mod primary_selection;
mod relative_pointer;
mod seat;
mod security_context;
pub mod session_lock;
mod single_pixel_buffer;
mod text_input;
mod wayray_wm;
mod wlr_data_control;
pub mod wlr_foreign_toplevel;
mod xdg_activation;
mod xdg_foreign;
mod xdg_shell;
mod xwayland;

pub use xdg_shell::handle_commit as xdg_handle_commit;
pub use xwayland::x11_wants_title_bar;
