"""Result tables: OMNeT++ result files and CSV-R exports read into pandas, and the common results table."""
