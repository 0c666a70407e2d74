"""`python -m otgan_lab.table ...` = `otlab table ...`."""

from otgan_lab.table.cli import main

main()
