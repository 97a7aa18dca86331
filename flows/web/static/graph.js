// Draws the library's step graphs from their Mermaid text (Mermaid is served from this machine).
if (window.mermaid) { window.mermaid.initialize({startOnLoad: true, securityLevel: "strict", theme: "neutral"}); }
