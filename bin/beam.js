#!/usr/bin/env node
console.log("hello from local beam", process.argv.slice(2))
