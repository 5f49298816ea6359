"""The operator console served at /console (static files: index.html, console.js, console.css)."""
