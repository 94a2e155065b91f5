// Stand-in for @napi-rs/cross-toolchain and @napi-rs/wasm-tools (see package.json): fails loudly if used.
throw new Error('@napi-rs/cli cross-compilation and WASI tooling are not installed in this project');
