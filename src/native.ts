// The one place that loads the Rust addon (native/), so every other module imports typed functions from
// here. Loading fails loudly: the service never runs without its native CRC, decoder and segment I/O.

export * from '#native';
