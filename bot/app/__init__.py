"""The Discord layer, the only package that imports discord: the client (client), shared
replies (replies), rendering (render, render_admin) and one module per feature (exts/)."""
