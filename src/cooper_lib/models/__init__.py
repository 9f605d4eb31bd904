"""Reference model assemblies (COOPER / BAGEL)."""
