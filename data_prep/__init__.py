"""geoprep: regulation PDFs to grounded, QC-checked training data."""
