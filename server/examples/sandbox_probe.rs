//! A stand-in for a sandbox engine (Flatpak) in the security-context test: it registers a
//! listening socket through wp_security_context_manager_v1, connects to that socket as the
//! "sandboxed app", and prints the globals the app sees, one `global NAME` line each.
//!
//!   sandbox_probe

use std::os::{fd::AsFd, unix::net::UnixListener};

use wayland_client::{protocol::wl_registry, Connection, Dispatch, QueueHandle};
use wayland_protocols::wp::security_context::v1::client::{
    wp_security_context_manager_v1::WpSecurityContextManagerV1,
    wp_security_context_v1::WpSecurityContextV1,
};

#[derive(Default)]
struct Engine {
    manager: Option<WpSecurityContextManagerV1>,
}

impl Dispatch<wl_registry::WlRegistry, ()> for Engine {
    fn event(
        state: &mut Self,
        registry: &wl_registry::WlRegistry,
        event: wl_registry::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        if let wl_registry::Event::Global {
            name, interface, ..
        } = event
        {
            if interface == "wp_security_context_manager_v1" {
                state.manager = Some(registry.bind(name, 1, qh, ()));
            }
        }
    }
}

wayland_client::delegate_noop!(Engine: ignore WpSecurityContextManagerV1);
wayland_client::delegate_noop!(Engine: ignore WpSecurityContextV1);

/// The sandboxed application: it only lists globals.
#[derive(Default)]
struct App {
    globals: Vec<String>,
}

impl Dispatch<wl_registry::WlRegistry, ()> for App {
    fn event(
        state: &mut Self,
        _: &wl_registry::WlRegistry,
        event: wl_registry::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_registry::Event::Global { interface, .. } = event {
            state.globals.push(interface);
        }
    }
}

fn main() {
    let conn = Connection::connect_to_env().expect("connect to the Wayland display");
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    let mut engine = Engine::default();
    queue.roundtrip(&mut engine).expect("roundtrip");
    let Some(manager) = engine.manager.clone() else {
        eprintln!("sandbox_probe: no wp_security_context_manager_v1");
        std::process::exit(2);
    };

    let runtime = std::env::var("XDG_RUNTIME_DIR").expect("XDG_RUNTIME_DIR");
    let path = std::path::Path::new(&runtime).join(format!("sandbox-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind the sandbox socket");
    // The compositor stops serving the socket when the write end closes (at our exit).
    let (close_read, _close_write) = std::io::pipe().expect("pipe");
    let context = manager.create_listener(listener.as_fd(), close_read.as_fd(), &qh, ());
    context.set_sandbox_engine("wayray-test".into());
    context.set_app_id("sandbox-probe".into());
    context.commit();
    queue.roundtrip(&mut engine).expect("roundtrip");

    let app_conn = Connection::from_socket(
        std::os::unix::net::UnixStream::connect(&path).expect("connect to the sandbox socket"),
    )
    .expect("sandboxed connection");
    let mut app_queue = app_conn.new_event_queue();
    app_conn.display().get_registry(&app_queue.handle(), ());
    let mut app = App::default();
    app_queue.roundtrip(&mut app).expect("sandboxed roundtrip");
    for global in &app.globals {
        println!("global {global}");
    }
    let _ = std::fs::remove_file(&path);
}
