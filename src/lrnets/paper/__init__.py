"""The papers' tables and figures: their cells (``cells``), the tables (``tables``), the
figures (``figures``) and the networks the project ships (``shipping``)."""
