"""Vigil's clients: the async SDK (``sdk``) and its blocking wrapper (``sync``), recording readers
(``recordings``), ``vigil replay`` (``replay``), ``vigil watch`` (``watch``), the LSL bridge
(``lsl``), ``vigil demo`` (``demo``), and the shipped real excerpts (``excerpts/``)."""
