// The namespaces the test files of Vessel.Tests and Vessel.IntegrationTests import again and
// again (both projects compile tests/Shared): the test framework, the shared test helpers, the
// library's modules and the BCL namespaces the tests use most, imported once here.
global using System.Diagnostics;
global using System.Globalization;
global using System.Net;
global using System.Net.Http.Json;
global using System.Net.Sockets;
global using System.Security.Cryptography;
global using System.Text;
global using System.Text.Json.Nodes;
global using Vessel.Agent;
global using Vessel.Blocks;
global using Vessel.Common;
global using Vessel.Containerd;
global using Vessel.Guest;
global using Vessel.Oci;
global using Vessel.Rootfs;
global using Vessel.Sandboxes;
global using Vessel.State;
global using Vessel.Templates;
global using Vessel.Testing;
global using Vessel.Vmm;
global using Xunit;
