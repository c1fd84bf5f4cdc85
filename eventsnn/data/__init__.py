"""LightningDataModules over tonic datasets and the offline datasets."""
