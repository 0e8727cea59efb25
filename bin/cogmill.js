#!/usr/bin/env node
// Entry point of the `cogmill` command: runs the TypeScript sources directly (Node >= 22.18 strips types).
await import('../src/cli.ts');
