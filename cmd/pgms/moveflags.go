package main

// verifyFlagHelp describes --verify of move and apply.
const verifyFlagHelp = "verification gate of the fast copy, before streaming starts: off, count (row counts per chunk) or full (row counts and content hashes per chunk, computed on both servers); a difference stops the move before the switch, keeping the copy for inspection"
