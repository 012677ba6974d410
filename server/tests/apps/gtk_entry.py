#!/usr/bin/python3
"""A GTK 4 window with one text field, for the toolkit tests: Enter prints the field's text
and quits with status 0. Run with GDK_BACKEND=wayland, so it only works through the
compositor's Wayland socket (Debian: python3-gi, gir1.2-gtk-4.0)."""
import sys

import gi

gi.require_version("Gtk", "4.0")
from gi.repository import Gtk  # noqa: E402

app = Gtk.Application(application_id="org.wayray.GtkEntry")


def activate(app):
    window = Gtk.ApplicationWindow(application=app, title="GTK entry")
    window.set_default_size(480, 60)
    entry = Gtk.Entry()
    window.set_child(entry)

    def submitted(entry):
        print(entry.get_text(), flush=True)
        app.quit()

    entry.connect("activate", submitted)
    window.present()


app.connect("activate", activate)
sys.exit(app.run(None))
