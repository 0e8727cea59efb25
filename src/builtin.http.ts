export default process.getBuiltinModule('node:http');
