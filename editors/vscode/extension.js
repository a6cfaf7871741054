// The diagrammar extension: starts `diagrammar lsp` for .circuit files and hands it the documents.
// Highlighting comes from syntaxes/circuit.tmLanguage.json (and the server's semantic tokens).
"use strict";
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("diagrammar").get("command") || ["diagrammar", "lsp"];
  const server = { command, args, transport: TransportKind.stdio };
  client = new LanguageClient("diagrammar", "diagrammar", { run: server, debug: server }, {
    documentSelector: [{ language: "circuit" }],
  });
  client.start().catch((err) => {
    vscode.window.showErrorMessage(
      `diagrammar: could not start "${command} ${args.join(" ")}" (${err.message}). ` +
      "Install it with: python3 -m pip install 'diagrammar[lsp]', or set diagrammar.command.");
  });
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
