#!/usr/bin/python3
"""A Qt 6 window with one text field, for the toolkit tests: Enter prints the field's text
and quits with status 0. Run with QT_QPA_PLATFORM=wayland, so it only works through the
compositor's Wayland socket (Debian: python3-pyqt6, qt6-wayland)."""
import sys

from PyQt6.QtWidgets import QApplication, QLineEdit

app = QApplication(sys.argv)
app.setDesktopFileName("wayray-qt-entry")
field = QLineEdit()
field.setWindowTitle("Qt entry")
field.resize(480, 60)


def submitted():
    print(field.text(), flush=True)
    app.quit()


field.returnPressed.connect(submitted)
field.show()
sys.exit(app.exec())
