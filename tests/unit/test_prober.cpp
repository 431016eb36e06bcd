// placeholder, being written.
