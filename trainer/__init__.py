"""The thin client a researcher imports (TRL, verl, OpenRLHF): planned, see README.md here."""
