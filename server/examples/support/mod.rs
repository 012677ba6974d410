//! What the test-client examples (`input_probe`, the protocol probes) share: printing one event
//! per line for the test that reads them, and filling a surface with one colour.

// Each example uses what it needs.
#![allow(dead_code)]

use std::{fmt::Display, io::Write, os::fd::AsFd};

use wayland_client::{
    protocol::{wl_buffer, wl_shm, wl_shm_pool, wl_surface},
    Dispatch, QueueHandle,
};

/// Prints `line` and flushes at once: the test reads stdout while the probe runs.
pub fn say(line: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
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
