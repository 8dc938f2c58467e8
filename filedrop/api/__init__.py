"""The Amili collection API: ``client`` (token, create invoices, get a batch), its ``types``
(credentials, results, the poll schedule and the errors that say whether a POST may have arrived)
and the ``poller`` that follows many batches on the guide's schedule. Nothing here knows of
spreadsheets.
"""
