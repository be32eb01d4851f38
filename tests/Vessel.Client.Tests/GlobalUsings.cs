// The namespaces every test file of Vessel.Client.Tests imports, imported once here; the scripted
// daemon's helpers (StartAsync, BodyAsync, EventAsync...) are what each test is written in.
global using System.Text.Json;
global using Microsoft.AspNetCore.Http;
global using Xunit;
global using static Vessel.Client.Tests.ScriptedDaemon;
