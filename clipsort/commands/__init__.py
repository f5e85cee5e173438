"""What each command does, as library calls: tagging, sorting, search, dupes, show, the library
view that search and dupes read, and the runs over labelled folders (learn, eval). Each takes
options and fills a report; the CLI renders it.

May import: review, run, model, writes, store, labels, photos.
"""
