"""Tools: the language server (`diagrammar lsp`) and the editor analysis it answers from."""
