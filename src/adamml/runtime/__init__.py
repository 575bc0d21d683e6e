"""The machine and the file system: devices, processes, precision, atomic files, JSON."""
