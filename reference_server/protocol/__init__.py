"""Sans-I/O protocol logic of the server: parsing client frames and building events. No sockets."""
