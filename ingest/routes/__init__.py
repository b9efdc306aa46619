"""Write routes over HTTP: records, blobs and keys, with their body handling and OpenAPI
descriptions.
"""
