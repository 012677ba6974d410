//! What the test-client examples (`input_probe`, the protocol probes) share: printing one event
//! per line for the test that reads them, connecting, reporting protocol errors, and filling a
//! surface with one colour.

// Each example uses what it needs.
#![allow(dead_code)]

use std::{fmt::Display, io::Write, os::fd::AsFd};

use wayland_client::{
    backend::{protocol::ProtocolError, WaylandError},
    globals::{registry_queue_init, GlobalList, GlobalListContents},
    protocol::{wl_buffer, wl_registry, wl_shm, wl_shm_pool, wl_surface},
    Connection, Dispatch, DispatchError, EventQueue, QueueHandle,
};

/// Prints `line` and flushes at once: the test reads stdout while the probe runs.
pub fn say(line: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Connects to `$WAYLAND_DISPLAY` and lists its globals, or exits 2 saying why (the probe
/// cannot test anything without a compositor). The state implements `Dispatch<WlRegistry,
/// GlobalListContents>` (usually doing nothing).
pub fn connect<D>(probe: &str) -> (Connection, GlobalList, EventQueue<D>)
where
    D: Dispatch<wl_registry::WlRegistry, GlobalListContents> + 'static,
{
    let conn = Connection::connect_to_env().unwrap_or_else(|e| {
        eprintln!("{probe}: cannot connect to the Wayland display: {e}");
        std::process::exit(2);
    });
    let (globals, queue) = registry_queue_init::<D>(&conn).unwrap_or_else(|e| {
        eprintln!("{probe}: cannot list the globals: {e}");
        std::process::exit(2);
    });
    (conn, globals, queue)
}

/// The protocol error that ended the connection, if that is what `err` is.
pub fn protocol_error(err: &DispatchError) -> Option<&ProtocolError> {
    match err {
        DispatchError::Backend(WaylandError::Protocol(e)) => Some(e),
        _ => None,
    }
}

/// A protocol error as the tests read it: `protocol error: INTERFACE@ID code N: MESSAGE`.
pub fn describe(e: &ProtocolError) -> String {
    format!(
        "protocol error: {}@{} code {}: {}",
        e.object_interface, e.object_id, e.code, e.message
    )
}

/// Parses `RRGGBB` into XRGB8888.
pub fn parse_colour(text: &str) -> Result<u32, String> {
    let hex = text.trim_start_matches('#');
    if hex.len() != 6 {
        return Err(format!("colour {text:?} is not RRGGBB"));
    }
    u32::from_str_radix(hex, 16).map_err(|e| format!("colour {text:?}: {e}"))
}

/// Attaches a fresh shm buffer of `colour` (XRGB8888) to `surface` and damages all of it; the
/// caller commits (after adding what else that commit carries).
pub fn attach_solid<D>(
    shm: &wl_shm::WlShm,
    qh: &QueueHandle<D>,
    surface: &wl_surface::WlSurface,
    (width, height): (i32, i32),
    colour: u32,
) where
    D: Dispatch<wl_shm_pool::WlShmPool, ()> + Dispatch<wl_buffer::WlBuffer, ()> + 'static,
{
    let stride = width * 4;
    let size = (stride * height) as usize;
    let file = tempfile::tempfile().expect("tempfile for the shm pool");
    let pixels: Vec<u8> = std::iter::repeat_n(colour.to_le_bytes(), size / 4)
        .flatten()
        .collect();
    (&file).write_all(&pixels).expect("fill shm pool");
    let pool = shm.create_pool(file.as_fd(), size as i32, qh, ());
    let buffer = pool.create_buffer(0, width, height, stride, wl_shm::Format::Xrgb8888, qh, ());
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, width, height);
    pool.destroy();
}
